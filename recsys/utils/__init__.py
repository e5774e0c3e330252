"""Small shared utilities: atomic file writes, seeding, hashing, progress bars."""
