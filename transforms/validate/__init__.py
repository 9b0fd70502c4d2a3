"""Stage family validate: normalize -> instantiate -> classify -> execute -> filter.

``ValidatePairs`` (``chain.py``) is the family as one composite, run on the pairs read or
synthesized and again on the evolved ones; the steps are in their own modules.
"""

from transforms.validate.chain import STEPS, ValidatedPairs, ValidatePairs, ValidateSettings

__all__ = ["STEPS", "ValidatedPairs", "ValidatePairs", "ValidateSettings"]
