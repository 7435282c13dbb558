"""SM2 signatures, SM3 hashes, SM4-GCM field encryption and key wrapping (docs/crypto.md)."""
