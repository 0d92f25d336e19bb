//! The bureau's key flow on the built-in software HSM (TEST LMK), end to end:
//! zone master keys from components, the issuer's transport key imported under its ZMK, the
//! DKeps, one field translated TK_issuer → DKep, a PIN block translated issuer → bureau,
//! and KTK/PTK/MTK issued for production under ZMK-prod, then imported on the production
//! side with KCV checks.
//!
//! Run: `cargo run --example bureau_flow [DIR]` (default: a fresh temporary directory).

use pmp_core::hierarchy;
use pmp_core::hsm::{CipherSpec, Hsm, KeySpec, PinSpec, SoftHsm};
use pmp_core::keyblock::{self, Exportability, Header, KeyAlgorithm, KeyUsage, ModeOfUse, Version};
use pmp_core::pinblock::{self, Pan, Pin, PinBlockFormat};
use pmp_core::{Algorithm, Padding, Result, SecretKey};

fn main() -> Result<()> {
    let base = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let mut r = [0u8; 4];
            pmp_core::fill_random(&mut r)?;
            std::env::temp_dir().join(format!("pmp-bureau-{}", hex::encode(r)))
        }
    };
    println!(
        "pmp-core {} — bureau key flow on the software HSM",
        pmp_core::VERSION
    );
    let bureau = SoftHsm::create_with_test_lmk(&base.join("bureau"))?;
    println!("bureau key store: {} (TEST LMK)", bureau.dir().display());

    // The issuer side of this demo holds clear keys only to play the issuer's part.
    let zmk_issuer = SecretKey::generate(Algorithm::Tdes, 16)?;
    let c1 = SecretKey::generate(Algorithm::Tdes, 16)?;
    let c2: Vec<u8> = c1
        .expose_secret()
        .iter()
        .zip(zmk_issuer.expose_secret())
        .map(|(a, b)| a ^ b)
        .collect();
    let zi = hierarchy::zmk_ceremony(
        &bureau,
        "ZMK-ISSUER",
        hierarchy::Zone::Import,
        Algorithm::Tdes,
        &[c1.expose_secret(), &c2],
        &[],
        Some(&zmk_issuer.kcv()),
    )?;
    println!(
        "1. ZMK-ISSUER formed from 2 components            KCV {}",
        zi.kcv
    );

    let tk = SecretKey::generate(Algorithm::Tdes, 16)?;
    let h = Header::new(
        Version::B,
        KeyUsage::D0,
        KeyAlgorithm::Tdes,
        ModeOfUse::B,
        Exportability::N,
    );
    let tk_block = keyblock::wrap(&zmk_issuer, &h, &tk, None)?;
    let tki = hierarchy::import_issuer_key(&bureau, "TK-ISSUER", &zi.handle, &tk_block, &tk.kcv())?;
    println!(
        "2. TK_issuer imported (TR-31 B, 2-key TDES: legacy decrypt only) KCV {}",
        tki.kcv
    );

    let pk = SecretKey::generate(Algorithm::Tdes, 16)?;
    let h = Header::new(
        Version::B,
        KeyUsage::P0,
        KeyAlgorithm::Tdes,
        ModeOfUse::B,
        Exportability::N,
    );
    let pki = hierarchy::import_issuer_key(
        &bureau,
        "PK-ISSUER",
        &zi.handle,
        &keyblock::wrap(&zmk_issuer, &h, &pk, None)?,
        &pk.kcv(),
    )?;
    println!(
        "   issuer PIN key imported                          KCV {}",
        pki.kcv
    );

    let dkeps = hierarchy::generate_dkeps(&bureau, &["PAN", "NAME", "TRACK2"])?;
    for d in &dkeps {
        println!(
            "3. {:<12} AES-256 D0, never exportable          KCV {}",
            d.spec.label, d.kcv
        );
    }
    let bureau_pin = bureau.generate_key(&KeySpec::new(
        "PK-BUREAU",
        Algorithm::Aes,
        16,
        KeyUsage::P0,
        ModeOfUse::B,
    ))?;

    // The issuer encrypts a PAN field under TK_issuer; the bureau translates it to DKEP-PAN.
    let pan_clear = b"4111111111111111";
    let mut field = [0u8; 24];
    let n = tk.cipher().encrypt(
        pmp_core::Mode::Cbc,
        Some(&[0; 8]),
        Padding::Iso9797M2,
        pan_clear,
        &mut field,
    )?;
    let mut iv = [0u8; 16];
    pmp_core::fill_random(&mut iv)?;
    let mut out = [0u8; 32];
    let m = bureau.translate(
        &CipherSpec::cbc(&tki.handle, &[0; 8], Padding::Iso9797M2),
        &CipherSpec::cbc(&dkeps[0].handle, &iv, Padding::Iso9797M2),
        &field[..n],
        &mut out,
    )?;
    println!("4. PAN field translated TK_issuer → DKEP-PAN inside the HSM ({m} bytes out)");

    let pan = Pan::new("4111111111111111")?;
    let mut pb = pinblock::encode(PinBlockFormat::Iso0, &Pin::new("1234")?, Some(&pan))?;
    pk.cipher().encrypt_ecb(&mut pb[..])?;
    let t = bureau.translate_pin(
        &PinSpec {
            key: &pki.handle,
            format: PinBlockFormat::Iso0,
        },
        &PinSpec {
            key: &bureau_pin.handle,
            format: PinBlockFormat::Iso4,
        },
        &pan,
        &pb[..],
    )?;
    println!(
        "5. PIN block translated: issuer PIN key / ISO 0 → bureau PIN key / ISO 4 ({} bytes)",
        t.len()
    );

    // Production zone: a ZMK shared with the production HSM, three components.
    let comps: Vec<SecretKey> = (0..3)
        .map(|_| SecretKey::generate(Algorithm::Aes, 32))
        .collect::<Result<_>>()?;
    let refs: Vec<&[u8]> = comps.iter().map(|c| c.expose_secret()).collect();
    let kcvs: Vec<_> = comps.iter().map(|c| Some(c.kcv())).collect();
    let zp = hierarchy::zmk_ceremony(
        &bureau,
        "ZMK-PROD",
        hierarchy::Zone::Export,
        Algorithm::Aes,
        &refs,
        &kcvs,
        None,
    )?;
    println!(
        "6. ZMK-PROD formed from 3 components (each KCV checked) KCV {}",
        zp.kcv
    );
    let tks = hierarchy::issue_transport_keys(&bureau, &zp.handle, "LINE1", Algorithm::Aes, 32)?;
    for k in [&tks.ktk, &tks.ptk, &tks.mtk] {
        println!(
            "7. {:<10} issued, KCV {}, block {}…",
            k.info.spec.label,
            k.info.kcv,
            &k.block[..24]
        );
    }

    let prod = SoftHsm::create_with_test_lmk(&base.join("production"))?;
    let zpp = hierarchy::zmk_ceremony(
        &prod,
        "ZMK-PROD",
        hierarchy::Zone::Import,
        Algorithm::Aes,
        &refs,
        &kcvs,
        Some(&zp.kcv),
    )?;
    let got = hierarchy::import_transport_keys(
        &prod,
        &zpp.handle,
        "LINE1",
        [
            (&tks.ktk.block, &tks.ktk.info.kcv),
            (&tks.ptk.block, &tks.ptk.info.kcv),
            (&tks.mtk.block, &tks.mtk.info.kcv),
        ],
    )?;
    println!(
        "8. production HSM imported KTK/PTK/MTK, KCVs match: {} {} {}",
        got[0].kcv, got[1].kcv, got[2].kcv
    );
    let audit = bureau.verify_audit()?;
    println!(
        "9. bureau audit log intact: {} entries ({})",
        audit.entries,
        base.join("bureau/audit.log").display()
    );
    Ok(())
}
