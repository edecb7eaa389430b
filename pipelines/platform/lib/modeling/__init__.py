"""Model code shared by every task: data preparation, the two model families, the baseline."""
