# berth's Django adapter (src/schema/django.rs): part A writes it.
