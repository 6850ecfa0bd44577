-- The vlob write path without foreign-key checks.
--
-- Every vlob_create / vlob_update inserts up to three rows (vlob, vlob_atom,
-- realm_vlob_update), and each foreign key on them ran a trigger that looked
-- up and share-locked the referenced row: six lookups and row locks per
-- write, about a third of the server's write throughput into one realm
-- (BENCHMARKS.md). The references they checked cannot dangle:
--   - the writer takes every id it stores from rows it read or inserted in
--     the same transaction, under the realm row's lock (vlob_batch.rs,
--     vlob.rs, the re-encryption batch save);
--   - the server never deletes a realm, a vlob, an atom or a device.
-- The unique constraints that keep versions and change-log indexes unique
-- stay: they are what decides between concurrent writers.
ALTER TABLE vlob DROP CONSTRAINT vlob_realm_fkey;
ALTER TABLE vlob_atom DROP CONSTRAINT vlob_atom_vlob_fkey, DROP CONSTRAINT vlob_atom_author_fkey;
ALTER TABLE realm_vlob_update DROP CONSTRAINT realm_vlob_update_realm_fkey,
    DROP CONSTRAINT realm_vlob_update_vlob_atom_fkey;
