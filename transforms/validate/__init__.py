"""Stage family validate: normalize -> instantiate -> classify -> execute -> filter."""
