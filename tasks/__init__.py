"""Task modules chained by deploy.py; util.py holds the pieces they share."""
