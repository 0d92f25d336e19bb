//! The demo's data preparation and production check: the issuer's EMV master keys, the
//! application profile, `prep::run_files`, and a second key store (the production HSM)
//! that imports the transport keys under its ZMK-prod and verifies the production file.

use std::path::Path;

use pmp_core::hierarchy::{self, TransportKeys};
use pmp_core::hsm::{Hsm, SoftHsm};
use pmp_core::keyblock::{self, Exportability, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use pmp_core::prep::{self, profile::Profile};
use pmp_core::{Algorithm, Error, Result, SecretKey};

use crate::labels;

/// The demo's application profile (the example of `docs/profile.md`, with the XOF MAC key
/// pinned): records 0101 (track 2, name) and 0102 (PAN, expiry, PSN, application version),
/// the ICC master keys (8000) and their KCVs (9000), the card PIN (8010), the PIN try
/// counter and limit (9010).
pub const PROFILE: &str = r#"<profile format="pmp-profile-1" name="VISA-CLASSIC-EMV" product="DEMO-VISA-CLASSIC">
  <keys ktk="PROD1-KTK" ptk="PROD1-PTK" mtk="PROD1-MTK" dtk="PROD1-DTK" xof-mac-key="XOF-MAC"/>
  <icc-keys option="auto" imk-ac="IMK-AC" imk-smi="IMK-SMI" imk-smc="IMK-SMC"
            pan="PAN" psn="PAN_SEQ" psn-default="00"/>
  <dgi id="0101"><tag id="57" from="TRACK2" format="track2"/><tag id="5F20" from="NAME" format="ans"/></dgi>
  <dgi id="0102"><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/>
                 <tag id="5F34" from="PAN_SEQ" format="n" default="00"/><tag id="9F08" value="0096"/></dgi>
  <dgi id="8000" content="icc-master-keys"/>
  <dgi id="9000" content="icc-master-key-kcvs"/>
  <dgi id="8010" content="pin-block"/>
  <dgi id="9010" value="0303"/>
</profile>
"#;

/// The issuer sends its EMV master keys IMK-AC, IMK-SMI, IMK-SMC (random 2-key TDES test
/// keys) as TR-31 blocks (usages E0, E2, E1; mode X) under a ZMK of its own ceremony,
/// each with its KCV.
pub fn send_issuer_master_keys(hsm: &dyn Hsm) -> Result<()> {
    let c1 = SecretKey::generate(Algorithm::Aes, 32)?;
    let c2 = SecretKey::generate(Algorithm::Aes, 32)?;
    let zmk = hierarchy::zmk_ceremony(
        hsm,
        labels::ZMK_ISSUER_EMV,
        hierarchy::Zone::Import,
        Algorithm::Aes,
        &[c1.expose_secret(), c2.expose_secret()],
        &[Some(c1.kcv()), Some(c2.kcv())],
        None,
    )?;
    let clear_zmk = pmp_core::combine_components(
        Algorithm::Aes,
        &[(c1.expose_secret(), None), (c2.expose_secret(), None)],
    )?;
    let imks = [
        SecretKey::generate(Algorithm::Tdes, 16)?,
        SecretKey::generate(Algorithm::Tdes, 16)?,
        SecretKey::generate(Algorithm::Tdes, 16)?,
    ];
    let mut blocks = Vec::with_capacity(3);
    for (k, usage) in imks.iter().zip([KeyUsage::E0, KeyUsage::E2, KeyUsage::E1]) {
        let h = keyblock::Header::new(
            Version::D,
            usage,
            KeyAlgorithm::Tdes,
            ModeOfUse::X,
            Exportability::N,
        );
        blocks.push(keyblock::wrap(&clear_zmk, &h, k, None)?);
    }
    let kcvs = [imks[0].kcv(), imks[1].kcv(), imks[2].kcv()];
    hierarchy::import_issuer_master_keys(
        hsm,
        &zmk.handle,
        [
            ("IMK-AC", &blocks[0], &kcvs[0]),
            ("IMK-SMI", &blocks[1], &kcvs[1]),
            ("IMK-SMC", &blocks[2], &kcvs[2]),
        ],
    )?;
    Ok(())
}

/// What the production side did.
#[derive(Debug)]
pub struct Production {
    /// The data-prep run.
    pub prep: prep::Summary,
    /// Cards verified on the production key store.
    pub verified: u64,
}

/// Data preparation of `xof` with [`PROFILE`] into `dir/production.xml`, then the production
/// side: a second key store `dir/production-line/keystore` (a directory of its own, so
/// that `--dir dir` still names one key store) forms ZMK-prod from the ceremony's
/// components, imports KTK/PTK/MTK/DTK from their key blocks (KCVs checked) and verifies
/// the production file.
pub fn prepare_and_verify(
    hsm: &dyn Hsm,
    dir: &Path,
    xof: &Path,
    transport: &TransportKeys,
    zmk_components: [&SecretKey; 2],
) -> Result<Production> {
    let profile_path = dir.join("profile.xml");
    std::fs::write(&profile_path, PROFILE).map_err(|e| Error::io(&profile_path, e))?;
    let profile = Profile::load(&profile_path)?;
    let out = dir.join("production.xml");
    let rejects = dir.join("production.rejects.txt");
    let summary = prep::run_files(
        hsm,
        &profile,
        xof,
        &out,
        Some(&rejects),
        &prep::Options::default(),
    )?;
    let line = dir.join("production-line");
    std::fs::create_dir_all(&line).map_err(|e| Error::io(&line, e))?;
    let prod = SoftHsm::create_with_test_lmk(&line.join("keystore"))?;
    let [c1, c2] = zmk_components;
    let zmk = hierarchy::zmk_ceremony(
        &prod,
        labels::ZMK_PROD,
        hierarchy::Zone::Import,
        Algorithm::Aes,
        &[c1.expose_secret(), c2.expose_secret()],
        &[Some(c1.kcv()), Some(c2.kcv())],
        None,
    )?;
    let t = transport;
    hierarchy::import_transport_keys(
        &prod,
        &zmk.handle,
        "PROD1",
        [
            (t.ktk.block.as_str(), &t.ktk.info.kcv),
            (t.ptk.block.as_str(), &t.ptk.info.kcv),
            (t.mtk.block.as_str(), &t.mtk.info.kcv),
            (t.dtk.block.as_str(), &t.dtk.info.kcv),
        ],
    )?;
    let verified = prep::production::verify_file(&out, &prod, Some("PROD1-MTK"))?;
    prod.flush_audit()?;
    Ok(Production {
        prep: summary,
        verified,
    })
}
