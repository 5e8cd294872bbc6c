

-- env: 'dev'
CREATE OR REPLACE FUNCTION add(a int, b int) RETURNS int
LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;

SELECT 'dev only';

INSERT INTO users (name, admin) VALUES ('O''Reilly', TRUE);
INSERT INTO users (name, admin) VALUES ( E'Ann \\ Lee', FALSE);
GRANT ALL ON ALL TABLES IN SCHEMA public TO "app""user";
BEGIN;
SELECT 42;
COMMIT;
SELECT ARRAY['x', 'y'],  E'{"name":"Ann \\\\ Lee","id":7}';

SELECT 'shop', 100, ARRAY['a', 'b''s'];

SELECT 'O''Brien', ARRAY[1, 2, 3];

SELECT  E'back\\slash', TRUE, 0.5;
SELECT decode('AAEC//5QTkcNCg==', 'base64');
SELECT '\x000102fffe504e470d0a'::bytea;
SELECT '566bfd8b-0a88-53ae-b163-b82148651bc1'::uuid;
SELECT "schema.table", 'x', raw_sql();
SELECT NULL, , 1.5, -3, FALSE;
