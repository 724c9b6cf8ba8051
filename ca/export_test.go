package ca

// VerifiedLen is how many certificates the verified-certificate cache holds.
func (c *CA) VerifiedLen() int { return c.verified.len() }
