"""Training: the trainer loop, its losses, schedules, checkpoints and run logs."""
