-- A data migration: full_name becomes first_name and last_name.
ALTER TABLE customers ADD COLUMN first_name text, ADD COLUMN last_name text;
UPDATE customers
   SET first_name = split_part(full_name, ' ', 1),
       last_name = nullif(substr(full_name, length(split_part(full_name, ' ', 1)) + 2), '');
ALTER TABLE customers ALTER COLUMN first_name SET NOT NULL, DROP COLUMN full_name;
