"""bitplan inside other trainers: ``integrations.hf`` for transformers' ``Trainer`` (docs/training.md)."""
