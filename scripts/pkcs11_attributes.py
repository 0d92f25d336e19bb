#!/usr/bin/env python3
"""Prints the PKCS#11 attributes of every key on a token, one JSON object a line.

Secret keys, and the private and public keys of RSA key pairs ("class": "secret",
"private" or "public"); for RSA objects also the modulus and public exponent in hex.

An independent reader for tests/pkcs11.rs (python-pkcs11, not pmp-core's own view):

    PMP_PKCS11_PIN=1234 python3 scripts/pkcs11_attributes.py MODULE TOKEN_LABEL

Needs python-pkcs11 (pip install python-pkcs11==0.10.1).
"""

import json
import time
import os
import sys

import pkcs11
from pkcs11 import Attribute, ObjectClass

FLAGS = {
    "token": Attribute.TOKEN,
    "private": Attribute.PRIVATE,
    "sensitive": Attribute.SENSITIVE,
    "always_sensitive": Attribute.ALWAYS_SENSITIVE,
    "extractable": Attribute.EXTRACTABLE,
    "never_extractable": Attribute.NEVER_EXTRACTABLE,
    "modifiable": Attribute.MODIFIABLE,
    "wrap_with_trusted": Attribute.WRAP_WITH_TRUSTED,
    "encrypt": Attribute.ENCRYPT,
    "decrypt": Attribute.DECRYPT,
    "sign": Attribute.SIGN,
    "verify": Attribute.VERIFY,
    "wrap": Attribute.WRAP,
    "unwrap": Attribute.UNWRAP,
    "derive": Attribute.DERIVE,
    "sign_recover": Attribute.SIGN_RECOVER,
    "verify_recover": Attribute.VERIFY_RECOVER,
    "local": Attribute.LOCAL,
}

CLASSES = {
    "secret": ObjectClass.SECRET_KEY,
    "private": ObjectClass.PRIVATE_KEY,
    "public": ObjectClass.PUBLIC_KEY,
}

# Public values of RSA objects (never a sensitive attribute).
NUMBERS = {
    "modulus": Attribute.MODULUS,
    "public_exponent": Attribute.PUBLIC_EXPONENT,
}


def rows(session) -> list:
    """Every key's class, label, id, flags (and an RSA object's public numbers). Raises
    PKCS11Error when an object vanishes while the listing itself runs (other tests on the
    token delete keys in parallel)."""
    out = []
    for class_name, object_class in CLASSES.items():
        for obj in session.get_objects({Attribute.CLASS: object_class}):
            try:
                row = {
                    "class": class_name,
                    "label": obj[Attribute.LABEL],
                    "id": bytes(obj[Attribute.ID]).decode("ascii", "replace"),
                }
                for name, attr in FLAGS.items():
                    try:
                        row[name] = bool(obj[attr])
                    except (pkcs11.exceptions.AttributeTypeInvalid, KeyError):
                        row[name] = None
                if class_name != "secret":
                    for name, attr in NUMBERS.items():
                        try:
                            row[name] = bytes(obj[attr]).hex().upper()
                        except (pkcs11.exceptions.AttributeTypeInvalid, KeyError):
                            row[name] = None
            except pkcs11.exceptions.ObjectHandleInvalid:
                # Destroyed by another test after listing: not one of the keys asked about.
                continue
            out.append(row)
    return out


def main() -> None:
    module, token_label = sys.argv[1], sys.argv[2]
    lib = pkcs11.lib(module)
    token = lib.get_token(token_label=token_label)
    with token.open(user_pin=os.environ["PMP_PKCS11_PIN"]) as session:
        for attempt in range(10):
            try:
                found = rows(session)
                break
            except pkcs11.exceptions.ObjectHandleInvalid:
                # An object vanished inside the listing itself: list again.
                if attempt == 9:
                    raise
                time.sleep(0.2)
    for row in found:
        print(json.dumps(row, sort_keys=True))


if __name__ == "__main__":
    main()
