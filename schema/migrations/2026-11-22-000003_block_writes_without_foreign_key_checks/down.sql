ALTER TABLE block ADD CONSTRAINT block_realm_fkey FOREIGN KEY (realm) REFERENCES realm (_id),
    ADD CONSTRAINT block_author_fkey FOREIGN KEY (author) REFERENCES device (_id);
