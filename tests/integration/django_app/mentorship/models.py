"""Mentors and their bookings (the runbook's core tables, shrunk)."""

from django.db import models


class Mentor(models.Model):
    """A mentor profile."""

    bio = models.TextField()
    rating = models.DecimalField(max_digits=3, decimal_places=2, default=0)
    is_approved = models.BooleanField(default=False)


class Booking(models.Model):
    """A session booked with a mentor."""

    mentor = models.ForeignKey(Mentor, on_delete=models.CASCADE)
    session_date = models.DateField()
    topic = models.CharField(max_length=200)
    status = models.CharField(max_length=50, default="pending")
