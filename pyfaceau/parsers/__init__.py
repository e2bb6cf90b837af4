"""Strict readers of OpenFace 2.2's model file formats.

All of OpenFace's model files are read here and nowhere else. Each reader raises
:class:`pyfaceau.errors.ModelFileError` naming the file on an unknown marker, a short read
or a value of the wrong type; nothing is silently defaulted.
"""
