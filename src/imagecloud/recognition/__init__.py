"""Deciding what a photo shows: whether verified evidence is a match, and which of several matches to answer.

``vision`` measures (features, correspondences, a homography); this package decides. Its rules have their
own tests, apart from the index and the service that call them.
"""
