-- Sort and filter keys compare as bytes (the "C" collation) whatever the server's locale: every
-- server then lists movies in the one order SQLite gives too, and Postgres sorts them by bytes
-- (with abbreviated keys) when it builds their indexes after a rebuild, not by a locale's rules.
ALTER TABLE movies
    ALTER COLUMN name_key TYPE TEXT COLLATE "C",
    ALTER COLUMN director_key TYPE TEXT COLLATE "C";
ALTER TABLE movie_genres ALTER COLUMN genre_key TYPE TEXT COLLATE "C";
ALTER TABLE genre_counts ALTER COLUMN genre_key TYPE TEXT COLLATE "C";
