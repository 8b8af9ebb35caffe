"""Generative models and data encoders: plain PyTorch/numpy behind one small protocol. No Prefect here."""
