-- Siren schema version 3: leases (issue 17, a cluster).
--
-- The nodes of a cluster share this database. A lease says which node does a piece of work
-- that exactly one node may do at a time (drain one federated peer's outbox): `holder` is the
-- node's id, `until` when the lease lapses unless renewed, by the database's clock. A holder
-- that finishes the work deletes the row; one that stops without finishing leaves it to expire,
-- and another node that finds it expired takes the work over.

CREATE TABLE leases (
    name   text PRIMARY KEY,
    holder text NOT NULL,
    until  timestamptz NOT NULL
);
