from store.cardkey import card_key, card_key_hex


def test_vector():
    uid = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"
    assert card_key_hex(bytes(range(16)), uid) == "f93811eb710f8a5d"
    assert card_key_hex(b"\x00" * 16, b"\xde\xad\xbe\xef") == "a844252500645f09"


def test_bytes_and_length():
    k = card_key(b"k", b"\x01\x02\x03\x04")
    assert isinstance(k, bytes) and len(k) == 8
    assert card_key(b"k", b"\x01\x02\x03\x04") == k
    assert card_key(b"other", b"\x01\x02\x03\x04") != k
