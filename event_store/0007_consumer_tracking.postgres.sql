-- Every consumer kind keeps its handlers' positions here, not only the projection builders.
ALTER TABLE projection_tracking RENAME TO consumer_tracking;
