//! `pmp demo` as a function: the bureau's main job end to end in a demo directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use pmp_core::hierarchy;
use pmp_core::hsm::{Hsm, KeyInfo, SoftHsm};
use pmp_core::import::{self, Summary};
use pmp_core::{Algorithm, Error, Result, SecretKey};

use crate::bureau::bureau_keys;
use crate::cards::Cards;
use crate::issuer_sim::IssuerSide;
use crate::labels;
use crate::scenario::Scenario;
use crate::verify::verify_against;

/// Where [`run`] keeps the demo's keys.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    /// A fresh software HSM with a TEST LMK in `DIR/keystore` (the default demo).
    SoftHsm,
    /// A backend the caller opened, e.g. a `Pkcs11Hsm` on a fresh token: the demo creates
    /// its keys there (their labels must be free) and writes no key store. Key-block
    /// import and export must be offered (on SoftHSMv2: the operator-allowed host key
    /// fallback).
    Open(&'a dyn Hsm),
}

/// What [`run`] did.
#[derive(Debug)]
pub struct DemoSummary {
    /// The output directory.
    pub dir: PathBuf,
    /// The backend's name (its capabilities' `backend`).
    pub backend: &'static str,
    /// The keys in the store after the demo.
    pub keys: Vec<KeyInfo>,
    /// The import's summary.
    pub import: Summary,
    /// Records verified by XOF MACs (`xof::verify_file_with_key`, the product's MAC key).
    pub xof_verified: u64,
    /// Records whose every attribute was decrypted and compared with the issuer's data.
    pub round_trip: u64,
    /// The transport keys issued for production (TR-31 blocks under ZMK-prod).
    pub transport: hierarchy::TransportKeys,
    /// Data preparation and the production side's check; `None` when the backend offers
    /// no EMV key derivation or card PIN blocks (the step is then left out).
    pub production: Option<crate::prep::Production>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The files and directories a demo directory holds (the only ones `run` may replace).
pub const DEMO_ENTRIES: [&str; 11] = [
    "keystore",
    "product.xml",
    "issuer-cards.csv.enc",
    "order.xof",
    "rejects.txt",
    "transport-keys.txt",
    "profile.xml",
    "production.xml",
    "production.rejects.txt",
    "production-line",
    ".pmp-demo",
];

/// Prepares `dir`: creates it, or clears a previous demo's files; refuses a non-empty
/// directory that is not a demo directory (no user data is ever removed).
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let entries: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        if !entries.iter().any(|e| e == ".pmp-demo") {
            return Err(Error::AlreadyExists(format!(
                "{} is not empty and is not a previous demo directory: choose another --out",
                dir.display()
            )));
        }
        if let Some(other) = entries.iter().find(|e| !DEMO_ENTRIES.contains(&e.as_str())) {
            return Err(Error::AlreadyExists(format!(
                "{} holds '{other}', which the demo did not write: choose another --out",
                dir.display()
            )));
        }
        for e in DEMO_ENTRIES {
            let p = dir.join(e);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|err| Error::io(&p, err))?;
            } else if p.exists() {
                std::fs::remove_file(&p).map_err(|err| Error::io(&p, err))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::write(
        dir.join(".pmp-demo"),
        "pmp demo directory: `pmp demo` may replace it\n",
    )
    .map_err(|e| Error::io(dir, e))
}

/// Runs the demo in `dir` with `cards` cards on `backend`. See the [crate
/// documentation](crate).
pub fn run(
    dir: &Path,
    cards: u64,
    backend: Backend<'_>,
    opts: &import::Options<'_>,
) -> Result<DemoSummary> {
    prepare_dir(dir)?;
    let ks = dir.join("keystore");
    let soft = match backend {
        Backend::SoftHsm => Some(SoftHsm::create_with_test_lmk(&ks)?),
        Backend::Open(_) => None,
    };
    let hsm: &dyn Hsm = match (&soft, backend) {
        (Some(s), _) => s,
        (None, Backend::Open(h)) => h,
        (None, Backend::SoftHsm) => unreachable!("the software HSM was created above"),
    };
    // Issuer: keys arrive as key blocks under the ZMK from the ceremony.
    let scenario = Scenario::default();
    let issuer = IssuerSide::new(scenario)?;
    issuer.send_keys(hsm)?;
    let caps = hsm.capabilities();
    let prep = caps.supports(pmp_core::hsm::Capability::IccKeyDerivation)
        && caps.supports(pmp_core::hsm::Capability::CardPin);
    if prep {
        crate::prep::send_issuer_master_keys(hsm)?;
    }
    bureau_keys(hsm, scenario.dkep_algorithm)?;
    let product_path = dir.join("product.xml");
    std::fs::write(&product_path, issuer.product_xml()).map_err(|e| Error::io(&product_path, e))?;
    let product = pmp_core::order::product::Product::load(&product_path)?;
    let seed = 20_250_101;
    let in_path = dir.join("issuer-cards.csv.enc");
    {
        let f = std::fs::File::create(&in_path).map_err(|e| Error::io(&in_path, e))?;
        let mut w = std::io::BufWriter::new(f);
        issuer.write_file(Cards::new(seed, cards), &mut w)?;
        w.flush().map_err(|e| Error::io(&in_path, e))?;
    }
    drop(issuer); // the issuer's clear keys go
    let xof_path = dir.join("order.xof");
    let rej_path = dir.join("rejects.txt");
    let summary = import::import_file(hsm, &product, &in_path, &xof_path, Some(&rej_path), opts)?;
    let xof_verified = pmp_core::xof::verify_file_with_key(&xof_path, hsm, labels::XOF_MAC)?;
    let round_trip = verify_against(hsm, &xof_path, Cards::new(seed, cards))?;
    // Data prep: transport keys for production, exported under ZMK-prod.
    let c1 = SecretKey::generate(Algorithm::Aes, 32)?;
    let c2 = SecretKey::generate(Algorithm::Aes, 32)?;
    let zmk_prod = hierarchy::zmk_ceremony(
        hsm,
        labels::ZMK_PROD,
        hierarchy::Zone::Export,
        Algorithm::Aes,
        &[c1.expose_secret(), c2.expose_secret()],
        &[Some(c1.kcv()), Some(c2.kcv())],
        None,
    )?;
    let transport =
        hierarchy::issue_transport_keys(hsm, &zmk_prod.handle, "PROD1", Algorithm::Aes, 32)?;
    let tk_path = dir.join("transport-keys.txt");
    let mut t = String::from(
        "# Transport keys for production: TR-31 version D key blocks under ZMK-PROD, with KCVs\n",
    );
    for (name, k) in [
        ("KTK", &transport.ktk),
        ("PTK", &transport.ptk),
        ("MTK", &transport.mtk),
        ("DTK", &transport.dtk),
    ] {
        t.push_str(&format!(
            "{name} label={} kcv={} block={}\n",
            k.info.spec.label, k.info.kcv, k.block
        ));
    }
    std::fs::write(&tk_path, t).map_err(|e| Error::io(&tk_path, e))?;
    let production = if prep {
        Some(crate::prep::prepare_and_verify(
            hsm,
            dir,
            &xof_path,
            &transport,
            [&c1, &c2],
        )?)
    } else {
        None
    };
    let mut files = vec![product_path, in_path, xof_path, rej_path, tk_path];
    if production.is_some() {
        for f in [
            "profile.xml",
            "production.xml",
            "production.rejects.txt",
            "production-line",
        ] {
            files.push(dir.join(f));
        }
    }
    if let Some(soft) = &soft {
        soft.flush_audit()?;
        files.insert(0, ks);
    }
    Ok(DemoSummary {
        dir: dir.to_path_buf(),
        backend: hsm.capabilities().backend(),
        keys: hsm.list_keys()?,
        import: summary,
        xof_verified,
        round_trip,
        transport,
        production,
        files,
    })
}
