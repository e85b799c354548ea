package redisstore

// RememberedReuses is how many reuses s keeps in memory because Redis did
// not take their family's revocation (see Store.reuse).
func RememberedReuses(s *Store) int {
	n := 0
	s.reusedHere.Range(func(any, any) bool { n++; return true })
	return n
}

// SetMaxRememberedReuses sets maxRememberedReuses until the returned
// function restores it.
func SetMaxRememberedReuses(n int) (restore func()) {
	old := maxRememberedReuses
	maxRememberedReuses = n
	return func() { maxRememberedReuses = old }
}
