"""Built-in techniques: one module per technique (or small family), each a Technique
subclass with its metadata beside its hookimpls. Modules here import only
``golfplan.core``; the registry finds them by scanning this package.
"""
