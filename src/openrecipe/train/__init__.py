"""The training engine: one explicit loop for SFT and continued pretraining (LoRA or full)."""
