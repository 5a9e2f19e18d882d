"""Studies run by validation entries (``study: module:function``): several solves
compared in one figure and table, returning their metrics."""
