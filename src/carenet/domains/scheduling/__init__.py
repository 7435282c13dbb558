"""Time-slot appointments (分时段预约): session templates, slots, bookings, check-in and queues."""
