"""Our Noise sealing (``transport.noise._seal_into``: each slice encrypted in place into one
buffer) gives the bytes noiseprotocol's own cipher state gives, message by message, for any
size and nonce, and spends the same nonces (sans-IO: no sockets)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from noise.backends.default.ciphers import ChaCha20Cipher
from noise.constants import MAX_NONCE
from noise.exceptions import NoiseMaxNonceError
from noise.state import CipherState

from ipfs_kit_node.transport.noise import _seal_into


class _Protocol:
    cipher_class = ChaCha20Cipher


def _state(key: bytes, nonce: int) -> CipherState:
    state = CipherState(_Protocol())
    state.initialize_key(key)
    state.set_nonce(nonce)
    return state


def _library_seal(state: CipherState, msg: bytes) -> bytes:
    """What the library's path sends: one message per 65,519 bytes, each length-prefixed."""
    out = b""
    for start in range(0, max(len(msg), 1), MAX_PLAINTEXT_LENGTH):
        sealed = state.encrypt_with_ad(None, msg[start:start + MAX_PLAINTEXT_LENGTH])
        out += len(sealed).to_bytes(2, "big") + sealed
    return out


@settings(max_examples=60, deadline=None)
@given(size=st.one_of(st.integers(0, 64), st.integers(MAX_PLAINTEXT_LENGTH - 2,
                                                         MAX_PLAINTEXT_LENGTH + 2),
                      st.integers(0, 5 * MAX_PLAINTEXT_LENGTH + 7)),
       nonce=st.one_of(st.integers(0, 3), st.integers(0, 2**40)))
def test_sealed_in_place_as_the_library_seals(size: int, nonce: int) -> None:
    key = os.urandom(32)
    msg = os.urandom(size)
    ours, theirs = _state(key, nonce), _state(key, nonce)
    assert bytes(_seal_into(ours.cipher.cipher, ours, msg)) == _library_seal(theirs, msg)
    assert ours.n == theirs.n == nonce + max(1, -(-size // MAX_PLAINTEXT_LENGTH))
    # And the peer opens every message in order.
    peer = _state(key, nonce)
    wire = memoryview(_library_seal(_state(key, nonce), msg))
    got = b""
    while wire:
        length = int.from_bytes(wire[:2], "big")
        got += peer.decrypt_with_ad(None, bytes(wire[2:2 + length]))
        wire = wire[2 + length:]
    assert got == msg


def test_no_nonce_is_reused_past_the_last() -> None:
    """Like the library, the last nonce (2**64 - 1) is never used: a message that would need
    it raises before anything is sealed or the counter moves."""
    state = _state(os.urandom(32), MAX_NONCE - 2)
    _seal_into(state.cipher.cipher, state, b"x")  # takes MAX_NONCE - 2
    with pytest.raises(NoiseMaxNonceError):
        _seal_into(state.cipher.cipher, state, b"y" * (MAX_PLAINTEXT_LENGTH + 1))
    assert state.n == MAX_NONCE - 1
