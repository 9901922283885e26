"""The policy core: the only code that changes what customers are told, and the audit of it."""
