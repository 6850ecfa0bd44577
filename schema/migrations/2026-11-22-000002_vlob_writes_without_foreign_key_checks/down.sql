ALTER TABLE realm_vlob_update ADD CONSTRAINT realm_vlob_update_realm_fkey FOREIGN KEY (realm) REFERENCES realm (_id),
    ADD CONSTRAINT realm_vlob_update_vlob_atom_fkey FOREIGN KEY (vlob_atom) REFERENCES vlob_atom (_id);
ALTER TABLE vlob_atom ADD CONSTRAINT vlob_atom_vlob_fkey FOREIGN KEY (vlob) REFERENCES vlob (_id),
    ADD CONSTRAINT vlob_atom_author_fkey FOREIGN KEY (author) REFERENCES device (_id);
ALTER TABLE vlob ADD CONSTRAINT vlob_realm_fkey FOREIGN KEY (realm) REFERENCES realm (_id);
