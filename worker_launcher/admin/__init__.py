"""What operators run by hand: --check-config (alias --checksetup)."""
