"""The cycle's stages, plain functions over plain data: signals → gaps → priorities → proposals."""
