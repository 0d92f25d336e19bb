//! A second `Hsm` backend for the tests: `HostBoundary` delegates every operation to a
//! `SoftHsm` but keeps the trait's default `decrypting_reader` — the weaker-boundary path a
//! plain PKCS#11 backend would use (file chunks decrypted through `Hsm::decrypt` into host
//! memory). It must pass the same conformance suite and import the same files.

use std::io::Read;
use std::path::PathBuf;

use pmp_core::hsm::rsa::{IccPoolLevel, IccRsaKey, IccRsaRequest, RsaKeyInfo, RsaKeySpec};
use pmp_core::hsm::{
    Capabilities, CipherSpec, Hsm, ImportCheck, KeyHandle, KeyInfo, KeySpec, PinSpec, SoftHsm,
    conformance,
};
use pmp_core::import::{self, Options};
use pmp_core::order::product::Product;
use pmp_core::pinblock::Pan;
use pmp_core::rsa::RsaExponent;
use pmp_core::{Algorithm, Kcv, MacAlgorithm, MacTag, Padding, Result};
use pmp_demo::{self as demo, Cards, IssuerSide, LayoutChoice, Scenario};

#[derive(Debug)]
struct HostBoundary(SoftHsm);

impl Hsm for HostBoundary {
    fn capabilities(&self) -> Capabilities {
        let inner = self.0.capabilities();
        Capabilities::new("host-boundary (test)")
            .with_all(inner.iter())
            .with_test_keys(inner.is_test())
    }
    fn generate_key(&self, spec: &KeySpec) -> Result<KeyInfo> {
        self.0.generate_key(spec)
    }
    fn form_key_from_components(
        &self,
        spec: &KeySpec,
        components: &[&[u8]],
        component_kcvs: &[Option<Kcv>],
        expected_kcv: Option<&Kcv>,
    ) -> Result<KeyInfo> {
        self.0
            .form_key_from_components(spec, components, component_kcvs, expected_kcv)
    }
    fn import_key_block_checked(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
        check: &ImportCheck<'_>,
    ) -> Result<KeyInfo> {
        self.0.import_key_block_checked(label, kek, block, check)
    }
    fn export_key_block(&self, key: &KeyHandle, kek: &KeyHandle) -> Result<String> {
        self.0.export_key_block(key, kek)
    }
    fn key_info(&self, key: &KeyHandle) -> Result<KeyInfo> {
        self.0.key_info(key)
    }
    fn find_key(&self, label: &str) -> Result<KeyHandle> {
        self.0.find_key(label)
    }
    fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.0.list_keys()
    }
    fn delete_key(&self, key: &KeyHandle) -> Result<()> {
        self.0.delete_key(key)
    }
    fn encrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.0.encrypt(spec, data, out)
    }
    fn decrypt(&self, spec: &CipherSpec<'_>, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.0.decrypt(spec, data, out)
    }
    fn translate(
        &self,
        from: &CipherSpec<'_>,
        to: &CipherSpec<'_>,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        self.0.translate(from, to, data, out)
    }
    fn translate_pin(
        &self,
        from: &PinSpec<'_>,
        to: &PinSpec<'_>,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        self.0.translate_pin(from, to, pan, block)
    }
    fn translate_pin_for_card(
        &self,
        from: &PinSpec<'_>,
        ptk: &KeyHandle,
        pan: &Pan,
        block: &[u8],
    ) -> Result<Vec<u8>> {
        self.0.translate_pin_for_card(from, ptk, pan, block)
    }
    fn derive_icc_master_keys(
        &self,
        req: &pmp_core::hsm::emv::IccKeyRequest<'_>,
    ) -> Result<pmp_core::hsm::emv::IccMasterKeys> {
        self.0.derive_icc_master_keys(req)
    }
    fn generate_rsa_key(&self, spec: &RsaKeySpec) -> Result<RsaKeyInfo> {
        self.0.generate_rsa_key(spec)
    }
    fn import_rsa_key_block(
        &self,
        label: &str,
        kek: &KeyHandle,
        block: &str,
    ) -> Result<RsaKeyInfo> {
        self.0.import_rsa_key_block(label, kek, block)
    }
    fn rsa_key_info(&self, key: &KeyHandle) -> Result<RsaKeyInfo> {
        self.0.rsa_key_info(key)
    }
    fn list_rsa_keys(&self) -> Result<Vec<RsaKeyInfo>> {
        self.0.list_rsa_keys()
    }
    fn sign_emv_recovery(&self, key: &KeyHandle, message: &[u8]) -> Result<Vec<u8>> {
        self.0.sign_emv_recovery(key, message)
    }
    fn generate_icc_rsa_key(&self, req: &IccRsaRequest<'_>) -> Result<IccRsaKey> {
        self.0.generate_icc_rsa_key(req)
    }
    fn fill_icc_key_pool(
        &self,
        bits: u32,
        exponent: RsaExponent,
        count: u64,
    ) -> Result<IccPoolLevel> {
        self.0.fill_icc_key_pool(bits, exponent, count)
    }
    fn icc_key_pool(&self) -> Result<Vec<IccPoolLevel>> {
        self.0.icc_key_pool()
    }
    fn generate_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
    ) -> Result<MacTag> {
        self.0.generate_mac(key, alg, padding, data)
    }
    fn verify_mac(
        &self,
        key: &KeyHandle,
        alg: MacAlgorithm,
        padding: Padding,
        data: &[u8],
        mac: &[u8],
    ) -> Result<()> {
        self.0.verify_mac(key, alg, padding, data, mac)
    }
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(name: &str) -> Self {
        let mut r = [0u8; 6];
        pmp_core::fill_random(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!("pmp-hostb-{name}-{}", hex::encode(r)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_second_backend_passes_the_conformance_suite() {
    let dir = TempDir::new("conf");
    let hsm = HostBoundary(SoftHsm::create_with_test_lmk(&dir.0.join("ks")).unwrap());
    let report = conformance::run_all(&hsm);
    assert!(report.is_complete(), "{report}");
    assert!(
        !hsm.capabilities()
            .supports(pmp_core::hsm::Capability::InBoundaryFileImport)
    );
}

#[test]
fn the_default_decrypting_reader_imports_whole_encrypted_files() {
    for tk in [Algorithm::Tdes, Algorithm::Aes] {
        let dir = TempDir::new("import");
        let hsm = HostBoundary(SoftHsm::create_with_test_lmk(&dir.0.join("ks")).unwrap());
        let scenario = Scenario {
            layout: LayoutChoice::Delimited,
            whole_file: true,
            per_field: false,
            tk_algorithm: tk,
            dkep_algorithm: Algorithm::Aes,
        };
        let issuer = IssuerSide::new(scenario).unwrap();
        issuer.send_keys(&hsm).unwrap();
        demo::bureau_keys(&hsm, Algorithm::Aes).unwrap();
        let product = Product::parse(&issuer.product_xml()).unwrap();
        let n = 300;
        let input = dir.0.join("in.dat");
        issuer
            .write_file(
                Cards::new(11, n),
                &mut std::fs::File::create(&input).unwrap(),
            )
            .unwrap();
        let out = dir.0.join("order.xof");
        let sum =
            import::import_file(&hsm, &product, &input, &out, None, &Options::default()).unwrap();
        let bad = Cards::new(11, n).filter(|c| c.defect.is_some()).count() as u64;
        assert_eq!((sum.read, sum.written, sum.rejected), (n, n - bad, bad));
        assert_eq!(pmp_core::xof::verify_file(&out, &hsm).unwrap(), n - bad);
        assert_eq!(
            demo::verify_against(&hsm, &out, Cards::new(11, n)).unwrap(),
            n - bad
        );
        // And the same reader, directly, refuses a truncated file.
        let bytes = std::fs::read(&input).unwrap();
        let tk_label = product_tk_label(&hsm);
        let key = hsm.find_key(&tk_label).unwrap();
        let bs = tk.block_size();
        let iv = vec![0u8; bs];
        let spec = CipherSpec::cbc(&key, &iv, Padding::Pkcs7);
        let short = bytes[..bytes.len() - 3].to_vec();
        let mut r = hsm
            .decrypting_reader(&spec, Box::new(std::io::Cursor::new(short)))
            .unwrap();
        let mut sink = Vec::new();
        assert!(
            r.read_to_end(&mut sink).is_err(),
            "{tk}: truncated input refused"
        );
    }
}

/// The data transport key the demo issuer sends (usage D0, imported decrypt-only).
fn product_tk_label(hsm: &dyn Hsm) -> String {
    hsm.list_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.spec.label.ends_with("TK-DATA"))
        .map(|k| k.spec.label)
        .expect("the issuer's data TK")
}
