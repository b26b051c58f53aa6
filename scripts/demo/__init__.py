"""The demo client: its servers' disk images (``images``) and their nightly backups (``prepare``)."""
