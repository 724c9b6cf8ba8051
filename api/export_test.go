package api

import "github.com/labstack/echo/v4"

// Routes lists every registered route, so tests can cover each one and a
// route added later is covered without touching the test.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }
