-- A day of queries an analyst ran against the Chinook music store (SQLite).
SELECT Name FROM Artist;
select name from artist;
SELECT COUNT(*) FROM Track WHERE Milliseconds > 300000;
SELECT a.Name, COUNT(*) AS albums
FROM Album al JOIN Artist a ON al.ArtistId = a.ArtistId
GROUP BY a.Name
ORDER BY albums DESC
LIMIT 5;
SELECT BillingCountry, SUM(Total) AS revenue FROM Invoice GROUP BY BillingCountry ORDER BY revenue DESC;
SELECT FirstName, LastName FROM Customer WHERE Country = 'Brazil';
SELECT FirstName, LastName FROM Customer WHERE Country = 'brazil';
SELECT FirstName, LastName FROM Customer WHERE Country = 'Germany';
SELECT g.Name, AVG(t.UnitPrice) FROM Track t JOIN Genre g ON t.GenreId = g.GenreId GROUP BY g.Name HAVING COUNT(*) > 100;
SELECT Title FROM Album WHERE AlbumId IN (SELECT AlbumId FROM Track WHERE GenreId = 1) ORDER BY Title LIMIT 10;
SELECT e.FirstName, e.LastName, COUNT(c.CustomerId) AS customers
FROM Employee e LEFT JOIN Customer c ON c.SupportRepId = e.EmployeeId
GROUP BY e.EmployeeId, e.FirstName, e.LastName;
WITH sales AS (SELECT CustomerId, SUM(Total) AS spent FROM Invoice GROUP BY CustomerId)
SELECT c.FirstName, c.LastName, s.spent FROM sales s JOIN Customer c ON c.CustomerId = s.CustomerId
WHERE s.spent > (SELECT AVG(spent) FROM sales) ORDER BY s.spent DESC;
SELECT Name, Milliseconds, RANK() OVER (PARTITION BY AlbumId ORDER BY Milliseconds DESC) AS rnk FROM Track WHERE AlbumId = 1;
SELECT strftime('%Y', InvoiceDate) AS year, COUNT(*) FROM Invoice GROUP BY year ORDER BY year;
SELECT Name FROM MediaType UNION SELECT Name FROM Genre;
SELECT Composer FROM Track WHERE Composer IS NOT NULL AND Name LIKE '%Love%';
SELECT * FROM Track WHERE Bytes BETWEEN 1000000 AND 2000000 AND (GenreId = 1 OR GenreId = 3) LIMIT 20;
SELECT Name FROM Playlist WHERE PlaylistId NOT IN (SELECT PlaylistId FROM PlaylistTrack);
SELECT CASE WHEN Total > 10 THEN 'large' ELSE 'small' END AS size, COUNT(*) FROM Invoice GROUP BY size;
SELECT Name FROM Artist WHERE Name = 'Queen';
SELECT Name FROM Artist WHERE Name = 'Queen';
SELECT Nme FROM Artist;
SELECT FROM WHERE;
DELETE FROM Track WHERE TrackId = 1;
UPDATE Invoice SET Total = 0;
SELECT Name FROM Genre; DROP TABLE Genre;
SELECT COUNT(*) FROM Track t1, Track t2, Track t3 WHERE t1.Milliseconds + t2.Milliseconds > t3.Milliseconds;
