package api

import (
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/gatehouse-iot/gatehouse/deviceid"
)

// checkDeviceIDParam refuses a :id path parameter that no device can have
// (400 invalid_argument with the grammar) before the handler looks it up:
// NUL bytes, invalid UTF-8, escapes and slashes never reach the database.
// Ids from before the grammar stay reachable (deviceid.CheckRef), so such a
// device can still be revoked or deleted.
func checkDeviceIDParam(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := deviceid.CheckRef("device id", c.Param("id")); err != nil {
			return err
		}
		return next(c)
	}
}

// withDeviceID is mw followed by checkDeviceIDParam, for routes under
// /devices/:id. It runs after authentication: a caller without credentials
// learns nothing about ids.
func withDeviceID(mw []echo.MiddlewareFunc) []echo.MiddlewareFunc {
	return append(slices.Clip(mw), checkDeviceIDParam)
}
