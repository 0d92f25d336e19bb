//! The conformance suite against backends that lack capabilities: `Restricted` wraps a
//! `SoftHsm`, drops some capabilities from its set, and refuses (`Error::Unsupported`) every
//! call that needs one of them — the way a PKCS#11 token such as SoftHSMv2 cannot form keys
//! from components or translate inside the device. The suite must pass, leave out exactly
//! the checks the missing capabilities call for, and say why.

use std::path::PathBuf;

use pmp_core::hsm::rsa::{IccPoolLevel, IccRsaKey, IccRsaRequest, RsaKeyInfo, RsaKeySpec};
use pmp_core::hsm::{
    Capabilities, Capability, CipherSpec, Hsm, ImportCheck, KeyHandle, KeyInfo, KeySpec, PinSpec,
    SoftHsm, conformance,
};
use pmp_core::keyblock::{self, Version};
use pmp_core::pinblock::{Pan, PinBlockFormat};
use pmp_core::rsa::RsaExponent;
use pmp_core::{Algorithm, Kcv, MacAlgorithm, MacTag, Padding, Result};

#[derive(Debug)]
struct Restricted {
    inner: SoftHsm,
    without: Vec<Capability>,
}

impl Restricted {
    fn require(&self, c: Capability) -> Result<()> {
        self.capabilities().require(c)
    }

    /// The version of the key blocks exported under `kek` (D under AES, B under TDES).
    fn export_version(&self, kek: &KeyHandle) -> Result<Version> {
        Ok(match self.inner.key_info(kek)?.spec.algorithm {
            Algorithm::Aes => Version::D,
            Algorithm::Tdes => Version::B,
        })
    }
}

impl Hsm for Restricted {
    fn capabilities(&self) -> Capabilities {
        let inner = self.inner.capabilities();
        Capabilities::new("restricted (test)")
            .with_all(inner.iter().filter(|c| !self.without.contains(c)))
            .with_test_keys(inner.is_test())
    }
    fn generate_key(&self, spec: &KeySpec) -> Result<KeyInfo> {
        self.require(Capability::KeyAlgorithm(spec.algorithm))?;
        self.inner.generate_key(spec)
    }
    fn form_key_from_components(
        &self,
        spec: &KeySpec,
        components: &[&[u8]],
        component_kcvs: &[Option<Kcv>],
        expected_kcv: Option<&Kcv>,
    ) -> Result<KeyInfo> {
        self.require(Capability::FormFromComponents)?;
        self.inner
            .form_key_from_components(spec, components, component_kcvs, expected_kcv)
    }
    fn import_key_block_checked(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
        check: &ImportCheck<'_>,
    ) -> Result<KeyInfo> {
        self.require(Capability::ImportKeyBlock(
            keyblock::inspect(block)?.version,
        ))?;
        self.inner
            .import_key_block_checked(label, kek, block, check)
    }
    fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> Result<String> {
        self.require(Capability::ExportKeyBlock(self.export_version(kek)?))?;
        self.inner.export_key_block(key, kek)
    }
    fn key_info(&self, key: &KeyHandle) -> Result<KeyInfo> {
        self.inner.key_info(key)
    }
    fn find_key(&self, label: &str) -> Result<KeyHandle> {
        self.inner.find_key(label)
    }
    fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.inner.list_keys()
    }
    fn delete_key(&self, key: &KeyHandle) -> Result<()> {
        self.inner.delete_key(key)
    }
    fn encrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.inner.encrypt(spec, data, out)
    }
    fn decrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.inner.decrypt(spec, data, out)
    }
    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        self.require(Capability::TranslateInDevice)?;
        self.inner.translate(from, to, data, out)
    }
    fn translate_pin(
        &self,
        from: &PinSpec<'_>,
        to: &PinSpec<'_>,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        self.require(Capability::PinFormat(from.format))?;
        self.require(Capability::PinFormat(to.format))?;
        self.inner.translate_pin(from, to, pan, block)
    }
    fn translate_pin_for_card(
        &self,
        from: &PinSpec<'_>,
        ptk: &KeyHandle,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        self.require(Capability::CardPin)?;
        self.inner.translate_pin_for_card(from, ptk, pan, block)
    }
    fn derive_icc_master_keys(
        &self,
        req: &pmp_core::hsm::emv::IccKeyRequest<'_>,
    ) -> Result<pmp_core::hsm::emv::IccMasterKeys> {
        self.require(Capability::IccKeyDerivation)?;
        self.inner.derive_icc_master_keys(req)
    }
    fn generate_rsa_key(&self, spec: &RsaKeySpec) -> Result<RsaKeyInfo> {
        self.require(Capability::RsaKeys)?;
        self.inner.generate_rsa_key(spec)
    }
    fn import_rsa_key_block(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
    ) -> Result<RsaKeyInfo> {
        self.require(Capability::RsaKeyBlockImport)?;
        self.inner.import_rsa_key_block(label, kek, block)
    }
    fn rsa_key_info(&self, key: &KeyHandle) -> Result<RsaKeyInfo> {
        self.require(Capability::RsaKeys)?;
        self.inner.rsa_key_info(key)
    }
    fn list_rsa_keys(&self) -> Result<Vec<RsaKeyInfo>> {
        self.inner.list_rsa_keys()
    }
    fn sign_emv_recovery(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        self.require(Capability::RsaKeys)?;
        self.inner.sign_emv_recovery(key, message)
    }
    fn generate_icc_rsa_key(&self, req: &IccRsaRequest<'_>) -> Result<IccRsaKey> {
        self.require(Capability::IccRsaKeys)?;
        if req.use_pool {
            self.require(Capability::IccKeyPool)?;
        }
        self.inner.generate_icc_rsa_key(req)
    }
    fn fill_icc_key_pool(
        &self,
        bits: u32,
        exponent: RsaExponent,
        count: u64,
    ) -> Result<IccPoolLevel> {
        self.require(Capability::IccKeyPool)?;
        self.inner.fill_icc_key_pool(bits, exponent, count)
    }
    fn icc_key_pool(&self) -> Result<Vec<IccPoolLevel>> {
        self.inner.icc_key_pool()
    }
    fn generate_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
    ) -> Result<MacTag> {
        self.require(Capability::Mac(alg))?;
        self.inner.generate_mac(key, alg, padding, data)
    }
    fn verify_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> Result<()> {
        self.require(Capability::Mac(alg))?;
        self.inner.verify_mac(key, alg, padding, data, mac)
    }
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        TempDir(std::env::temp_dir().join(format!("pmp-conf-{name}-{}", hex::encode(r))))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the suite on a `SoftHsm` without `without`; checks that exactly `skipped` were left
/// out, each for the capability given, that the reason names it, and that the run left no key
/// behind.
fn run_without(without: &[Capability], skipped: &[(&str, Capability)]) -> conformance::Report {
    let dir = TempDir::new("restricted");
    let hsm = Restricted {
        inner: SoftHsm::create_with_test_lmk(&dir.0).unwrap(),
        without: without.to_vec(),
    };
    let report = conformance::run_all(&hsm);
    let got: Vec<(&str, Capability)> = report
        .skipped()
        .iter()
        .map(|s| (s.check.as_str(), s.missing))
        .collect();
    assert_eq!(got, skipped, "{report}");
    for s in report.skipped() {
        assert!(
            s.reason.contains(&s.missing.to_string()) && s.reason.contains("restricted (test)"),
            "the reason names the backend and what it lacks: {}",
            s.reason
        );
    }
    assert!(hsm.list_keys().unwrap().is_empty(), "the suite cleans up");
    report
}

/// Without forming from components and translation in the device (what SoftHSMv2 over
/// PKCS#11 lacks), the suite still runs every round trip, cross-check and refusal, the whole
/// policy matrix and its fall-backs (unwrap of a block the HSM exported, MAC verify of a tag
/// the HSM generated), and leaves out only the known-answer checks and the translation.
#[test]
fn without_components_and_translation_only_known_answers_and_translation_are_left_out() {
    use Capability::{FormFromComponents as Form, TranslateInDevice as Translate};
    let report = run_without(
        &[Form, Translate],
        &[
            ("known-keys", Form),
            ("data.known-answer/TDES-16", Form),
            ("data.known-answer/TDES-24", Form),
            ("data.known-answer/AES-16", Form),
            ("data.known-answer/AES-32", Form),
            ("translate.round-trip", Translate),
            ("translate.known-answer", Translate),
            ("components", Form),
            ("export-import.known-answer", Form),
            ("pin.round-trip", Form),
            ("pin.round-trip/ISO-4", Form),
            ("mac.known-answer/Retail", Form),
            ("mac.known-answer/CbcTdes", Form),
            ("mac.known-answer/CbcAes", Form),
            ("mac.known-answer/CmacTdes", Form),
            ("mac.known-answer/CmacAes", Form),
            ("policy-matrix.success-with-valid-input", Form),
            ("rsa.key-block-import", Form),
            ("rsa.icc-keys.known-answer", Form),
        ],
    );
    for check in [
        "data.round-trip/TDES-16",
        "kcv.cross-check/AES",
        "data.file-reader",
        "export-import/D",
        "export-import/B",
        "export-import.refusals",
        "pin.refusals",
        "mac.round-trip/CmacAes",
        "policy-matrix/Unwrap",
        "policy-matrix/PinEncrypt",
        "policy-matrix",
    ] {
        assert!(report.has_run(check), "{check}: {report}");
    }
    // The allowed cells without valid input: PIN decipher (P0 with B, D) and encipher (P0
    // with B, E), MAC verify with a verify-only key (M0, M1, M3, M5, M6 over their
    // algorithms: 8 usage-algorithm pairs, mode V), unwrap with an unwrap-only KEK (K0, K1
    // with D): 2 + 2 + 8 + 2.
    let s = report
        .skipped_check("policy-matrix.success-with-valid-input")
        .unwrap();
    assert!(s.reason.starts_with("14 allowed cells"), "{}", s.reason);
}

/// A narrower backend (AES and TDES keys, CMAC only, no key blocks, no PIN formats): the
/// policy matrix walks only the columns it can, and says which it left out.
#[test]
fn a_backend_with_cmac_only_and_no_key_blocks_or_pins() {
    use Capability::*;
    let without = [
        FormFromComponents,
        TranslateInDevice,
        ImportKeyBlock(Version::B),
        ImportKeyBlock(Version::D),
        ExportKeyBlock(Version::B),
        ExportKeyBlock(Version::D),
        PinFormat(PinBlockFormat::Iso0),
        PinFormat(PinBlockFormat::Iso1),
        PinFormat(PinBlockFormat::Iso3),
        PinFormat(PinBlockFormat::Iso4),
        Mac(MacAlgorithm::Retail),
        Mac(MacAlgorithm::CbcTdes),
        Mac(MacAlgorithm::CbcAes),
    ];
    let report = run_without(
        &without,
        &[
            ("known-keys", FormFromComponents),
            ("data.known-answer/TDES-16", FormFromComponents),
            ("data.known-answer/TDES-24", FormFromComponents),
            ("data.known-answer/AES-16", FormFromComponents),
            ("data.known-answer/AES-32", FormFromComponents),
            ("translate.round-trip", TranslateInDevice),
            ("translate.known-answer", TranslateInDevice),
            ("components", FormFromComponents),
            ("export-import/D", ExportKeyBlock(Version::D)),
            ("export-import/B", ExportKeyBlock(Version::B)),
            ("export-import.refusals", ExportKeyBlock(Version::D)),
            ("export-import.known-answer", FormFromComponents),
            ("pin.refusals", PinFormat(PinBlockFormat::Iso0)),
            ("pin.round-trip", FormFromComponents),
            ("pin.round-trip/ISO-4", FormFromComponents),
            ("mac.round-trip/Retail", Mac(MacAlgorithm::Retail)),
            ("mac.known-answer/Retail", Mac(MacAlgorithm::Retail)),
            ("mac.round-trip/CbcTdes", Mac(MacAlgorithm::CbcTdes)),
            ("mac.known-answer/CbcTdes", Mac(MacAlgorithm::CbcTdes)),
            ("mac.round-trip/CbcAes", Mac(MacAlgorithm::CbcAes)),
            ("mac.known-answer/CbcAes", Mac(MacAlgorithm::CbcAes)),
            ("mac.known-answer/CmacTdes", FormFromComponents),
            ("mac.known-answer/CmacAes", FormFromComponents),
            ("policy-matrix/PinDecrypt", PinFormat(PinBlockFormat::Iso0)),
            ("policy-matrix/PinEncrypt", PinFormat(PinBlockFormat::Iso0)),
            (
                "policy-matrix/MacGenerate(Retail)",
                Mac(MacAlgorithm::Retail),
            ),
            (
                "policy-matrix/MacGenerate(CbcTdes)",
                Mac(MacAlgorithm::CbcTdes),
            ),
            (
                "policy-matrix/MacGenerate(CbcAes)",
                Mac(MacAlgorithm::CbcAes),
            ),
            ("policy-matrix/MacVerify(Retail)", Mac(MacAlgorithm::Retail)),
            (
                "policy-matrix/MacVerify(CbcTdes)",
                Mac(MacAlgorithm::CbcTdes),
            ),
            ("policy-matrix/MacVerify(CbcAes)", Mac(MacAlgorithm::CbcAes)),
            ("policy-matrix/Wrap", ExportKeyBlock(Version::D)),
            ("policy-matrix/Unwrap", ImportKeyBlock(Version::D)),
            ("policy-matrix.success-with-valid-input", FormFromComponents),
            ("rsa.key-block-import", FormFromComponents),
            ("rsa.icc-keys.known-answer", FormFromComponents),
        ],
    );
    for check in [
        "policy-matrix/Encrypt",
        "policy-matrix/MacVerify(CmacAes)",
        "mac.round-trip/CmacTdes",
        "kcv.cross-check/TDES",
    ] {
        assert!(report.has_run(check), "{check}: {report}");
    }
    // MAC verify with a verify-only key: M5 and M6 over CMAC TDES and CMAC AES.
    let s = report
        .skipped_check("policy-matrix.success-with-valid-input")
        .unwrap();
    assert!(s.reason.starts_with("4 allowed cells"), "{}", s.reason);
}

/// A backend without RSA keys (a token with no RSA mechanisms): exactly the RSA checks are
/// left out, each for the capability it needs.
#[test]
fn a_backend_without_rsa_leaves_out_the_rsa_checks() {
    use Capability::*;
    let report = run_without(
        &[RsaKeys, RsaKeyBlockImport, IccRsaKeys, IccKeyPool],
        &[
            ("rsa.keys", RsaKeys),
            ("rsa.key-block-import", RsaKeyBlockImport),
            ("rsa.icc-keys", IccRsaKeys),
            ("rsa.icc-keys.known-answer", IccRsaKeys),
            ("rsa.pool", IccRsaKeys),
        ],
    );
    assert!(report.has_run("known-keys"), "{report}");
}
