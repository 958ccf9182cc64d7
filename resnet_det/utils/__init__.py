"""Helpers without torch or detectron2 (numpy, Pillow, matplotlib): the one image reader, atomic
files, drawing, plotting and the command-line conventions. The deploy runner imports from here."""
