"""External systems behind small interfaces, each with an embedded default."""
