// Package attempt gives a loop's attempts a deadline each, reusing one
// context and one timer between deadlines instead of context.WithTimeout
// per attempt, which shows in the CPU profile of a hot loop (the DHCP
// server's workers, the data service's writers).
package attempt
