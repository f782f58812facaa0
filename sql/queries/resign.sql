-- Give up leadership of a role (on shutdown), so another process takes over at once.
DELETE FROM leaders WHERE role = $1 AND holder = $2
