"""Object storage behind one small interface (see ``base.Storage``): local directory and S3."""
