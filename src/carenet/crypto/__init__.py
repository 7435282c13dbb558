"""SM2 signatures, SM3 hashes, SM4/AES field encryption and key storage (issue 3)."""
