// Package secureboost trains gradient-boosted trees across parties that
// hold different features of the same customers (SecureBoost).
package secureboost
