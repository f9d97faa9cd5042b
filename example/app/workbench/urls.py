"""The frontend's URLs."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("version", views.version),
    path("healthz", views.healthz),
]
