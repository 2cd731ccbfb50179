"""The live view: a small web app that streams a reply and its readings."""
