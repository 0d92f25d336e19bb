//! Data translation from one key to another, single and batched: inside the device, or
//! through host memory where the backend reports that fallback instead.

use super::Suite;
use crate::hsm::{Capability, CipherSpec, KeySpec, TranslateItem};
use crate::keyblock::{KeyUsage, ModeOfUse};
use crate::{Algorithm, Error, Mode, Padding};

/// Encrypt under A, translate A → B, decrypt under B gives the text back; a target that may
/// only encrypt cannot be translated from; a batch is all or nothing. With known keys the
/// HSM's result is also decrypted on the host. The contract is the same whether the backend
/// translates in the device or offers [`Capability::HostTranslateFallback`] instead.
pub(super) fn translation(s: &mut Suite<'_>) {
    let how = if !s.caps.supports(Capability::TranslateInDevice)
        && s.caps.supports(Capability::HostTranslateFallback)
    {
        Capability::HostTranslateFallback
    } else {
        Capability::TranslateInDevice
    };
    let needs = [how, Capability::KeyAlgorithm(Algorithm::Tdes)];
    if !s.can_run("translate.round-trip", &needs) {
        s.can_run("translate.known-answer", &needs);
        return;
    }
    let hsm = s.hsm;
    let spec = |what: &str, alg, mode| KeySpec::new(&s.label(what), alg, 16, KeyUsage::D0, mode);
    let a = s
        .make(&spec("tr-a", Algorithm::Tdes, ModeOfUse::B))
        .expect("make a");
    let b = s
        .make(&spec("tr-b", Algorithm::Aes, ModeOfUse::B))
        .expect("make b");
    let e = s
        .generate(&spec("tr-e", Algorithm::Aes, ModeOfUse::E))
        .expect("generate e");
    let msg = b"JOHN Q PUBLIC/MR";
    let iv_a = [1u8; 8];
    let iv_b = [2u8; 16];
    let from = CipherSpec::cbc(&a.handle, &iv_a, Padding::Iso9797M2);
    let to = CipherSpec::cbc(&b.handle, &iv_b, Padding::Iso9797M2);
    let mut ct = [0u8; 32];
    let n = hsm.encrypt(&from, msg, &mut ct).expect("encrypt under a");
    let mut out = [0u8; 48];
    let m = hsm
        .translate(&from, &to, &ct[..n], &mut out)
        .expect("translate");
    let mut pt = [0u8; 48];
    let k = hsm
        .decrypt(&to, &out[..m], &mut pt)
        .expect("decrypt under b");
    assert_eq!(&pt[..k], msg, "encrypt, translate, decrypt");

    // The target key (mode E) may encrypt only: translating back from it is refused.
    let to_e = CipherSpec::cbc(&e.handle, &iv_b, Padding::Iso9797M2);
    let me = hsm
        .translate(&from, &to_e, &ct[..n], &mut out)
        .expect("translate to an encrypt-only key");
    assert!(matches!(
        hsm.translate(&to_e, &from, &out[..me], &mut pt),
        Err(Error::Policy(_))
    ));
    let m = hsm
        .translate(&from, &to, &ct[..n], &mut out)
        .expect("translate");

    // Batch: all or nothing (two items, or one where the backend takes only one).
    let k = s.caps.max_batch_items().min(2);
    let good = TranslateItem {
        from,
        to,
        data: &ct[..n],
    };
    let mut buf = vec![9u8; 3];
    let ends = hsm
        .translate_batch(&vec![good; k], &mut buf)
        .expect("batch");
    assert_eq!(ends, (1..=k).map(|i| 3 + i * m).collect::<Vec<_>>());
    assert!(buf[3..].chunks(m).all(|c| c == &out[..m]));
    let mut bad = ct;
    bad[n - 1] ^= 0xFF; // breaks the padding of the last item
    let mut items = vec![good; k];
    items[k - 1].data = &bad[..n];
    let mut buf = vec![9u8; 3];
    assert!(hsm.translate_batch(&items, &mut buf).is_err());
    assert_eq!(
        buf,
        vec![9u8; 3],
        "a failed batch leaves the output as it was"
    );

    // Known answer: a ciphertext made on the host under A comes out of the HSM as the
    // host's encryption under B.
    let (Some(ka), Some(kb)) = (&a.clear, &b.clear) else {
        s.can_run_known("translate.known-answer", &needs);
        return;
    };
    let mut host_ct = [0u8; 32];
    let hn = ka
        .cipher()
        .encrypt(
            Mode::Cbc,
            Some(&iv_a),
            Padding::Iso9797M2,
            msg,
            &mut host_ct,
        )
        .expect("host encrypt");
    let m = hsm
        .translate(&from, &to, &host_ct[..hn], &mut out)
        .expect("translate");
    let mut want = [0u8; 48];
    let wn = kb
        .cipher()
        .encrypt(Mode::Cbc, Some(&iv_b), Padding::Iso9797M2, msg, &mut want)
        .expect("host encrypt");
    assert_eq!(
        &out[..m],
        &want[..wn],
        "HSM and host agree on the translation"
    );
    s.ran("translate.known-answer");
}
