"""apotflow."""
