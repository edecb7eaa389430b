"""Wind power: will a turbine of the La Haute Borne wind farm ramp up in the next hour, its output
over the hour starting an hour from now at least 10% of its rating above its last hour's? (predictions
every 10 minutes on real SCADA data: ENGIE's four Senvion MM82 turbines, 2014-2015, as shipped in
the pinned openoa wheel)."""
