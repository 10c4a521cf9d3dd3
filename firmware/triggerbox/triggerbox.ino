// jumprig trigger box: the camera pulse train, on an ATmega328P (Arduino Uno or Nano) at 16 MHz.
//
// Protocol and wiring: docs/triggerbox.md. This file mirrors acquisition/triggerbox/protocol.py
// (constants, reply grammar, rate arithmetic) and firmware_model.py (the state machine); the
// Python emulator of the digital twin must answer exactly as this firmware does.
//
// Timer1 runs in CTC mode (TOP = OCR1A) and toggles OC1A (digital pin 9, PB1) in hardware on
// every compare match, so pulse periods are exact to the crystal whatever the CPU is doing.
// The compare-match interrupt only counts rising edges. Duty cycle: 50 %.

#include <Arduino.h>
#include <util/atomic.h>

static const char FIRMWARE_VERSION[] = "1.0.0";
static const uint32_t BAUDRATE = 115200;

// The line buffer; a longer line is dropped whole and answered with ERR ? OVERFLOW.
static const uint8_t MAX_REQUEST_BYTES = 32;

// Rates in micro-hertz, so that "333.000333" is exact and no float is needed.
static const uint64_t MICROHERTZ_PER_HZ = 1000000ULL;
static const uint64_t MIN_RATE_UHZ = 120000ULL;          // 0.12 Hz: the 16-bit timer's floor
static const uint64_t MAX_RATE_UHZ = 10000000000ULL;     // 10 kHz
static const uint64_t HALF_CPU_CLOCK_UHZ = 8000000ULL * MICROHERTZ_PER_HZ;  // F_CPU / 2
static const uint32_t TIMER_MAX_HALF_PERIOD_TICKS = 65536UL;
static const uint16_t TIMER_PRESCALERS[] = {1, 8, 64, 256, 1024};  // CS1[2:0] = index + 1

static const uint8_t TRIGGER_PIN = 9;       // OC1A: the only pin Timer1 channel A drives
static const uint8_t RUNNING_LED_PIN = 13;  // on while the pulse train runs

enum BoxState : uint8_t { IDLE, ARMED, RUNNING };

static BoxState state = IDLE;
static bool rateSet = false;
static uint16_t compareValue = 0;  // OCR1A = half period in timer ticks - 1
static uint8_t clockSelect = 0;    // CS1[2:0] bits
static uint64_t achievedRateUhz = 0;

// Written by the interrupt; read with interrupts off (a 32-bit read is not atomic on AVR).
static volatile uint32_t pulseCount = 0;
static volatile bool lineHigh = false;

static char lineBuffer[MAX_REQUEST_BYTES + 1];
static uint8_t lineLength = 0;
static bool lineOverflowed = false;
static bool lineHasBadByte = false;

ISR(TIMER1_COMPA_vect) {
  // The hardware has just toggled OC1A; a rising edge is the start of a pulse.
  lineHigh = !lineHigh;
  if (lineHigh) {
    pulseCount++;
  }
}

// --- replies ------------------------------------------------------------------------------

static void replyOk(const __FlashStringHelper *command) {
  Serial.print(F("OK "));
  Serial.print(command);
  Serial.write('\n');
}

static void replyOkValue(const __FlashStringHelper *command, uint32_t value) {
  Serial.print(F("OK "));
  Serial.print(command);
  Serial.write(' ');
  Serial.print(value);
  Serial.write('\n');
}

static void replyError(const __FlashStringHelper *command, const __FlashStringHelper *code,
                       const __FlashStringHelper *message) {
  Serial.print(F("ERR "));
  Serial.print(command);
  Serial.write(' ');
  Serial.print(code);
  Serial.write(' ');
  Serial.print(message);
  Serial.write('\n');
}

static void printRateUhz(uint64_t rateUhz) {
  // Print has no 64-bit integers: whole hertz, then six zero-padded decimals.
  uint32_t whole = (uint32_t)(rateUhz / MICROHERTZ_PER_HZ);
  uint32_t fraction = (uint32_t)(rateUhz % MICROHERTZ_PER_HZ);
  Serial.print(whole);
  Serial.write('.');
  for (uint32_t digit = 100000UL; digit > 0; digit /= 10) {
    Serial.write('0' + (uint8_t)((fraction / digit) % 10));
  }
}

// --- the timer ----------------------------------------------------------------------------

// The closest Timer1 setting: the smallest prescaler whose half period fits 16 bits.
static bool computeTimer(uint64_t rateUhz) {
  if (rateUhz < MIN_RATE_UHZ || rateUhz > MAX_RATE_UHZ) {
    return false;
  }
  for (uint8_t i = 0; i < sizeof(TIMER_PRESCALERS) / sizeof(TIMER_PRESCALERS[0]); i++) {
    uint64_t divisor = (uint64_t)TIMER_PRESCALERS[i] * rateUhz;
    uint64_t halfPeriodTicks = (HALF_CPU_CLOCK_UHZ + divisor / 2) / divisor;
    if (halfPeriodTicks >= 1 && halfPeriodTicks <= TIMER_MAX_HALF_PERIOD_TICKS) {
      uint64_t cycles = (uint64_t)TIMER_PRESCALERS[i] * halfPeriodTicks;
      achievedRateUhz = (HALF_CPU_CLOCK_UHZ + cycles / 2) / cycles;
      compareValue = (uint16_t)(halfPeriodTicks - 1);
      clockSelect = i + 1;
      return true;
    }
  }
  return false;
}

static void forceLineLow() {
  TCCR1A = _BV(COM1A1);  // "clear OC1A on compare match"...
  TCCR1C = _BV(FOC1A);   // ...forced now: no interrupt, no timer reset
}

static void startPulses() {
  ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
    TCCR1B = 0;  // timer stopped while it is set up
    TCNT1 = 0;
    OCR1A = compareValue;
    forceLineLow();
    TCCR1A = _BV(COM1A0);  // toggle OC1A on every compare match from here on
    TCCR1C = _BV(FOC1A);   // forced toggle: the line rises now, pulse 0 starts
    lineHigh = true;
    pulseCount = 1;
    TIFR1 = _BV(OCF1A);  // drop a stale compare flag (written 1 clears it)
    TIMSK1 = _BV(OCIE1A);
    TCCR1B = _BV(WGM12) | clockSelect;  // CTC, TOP = OCR1A; the clock starts here
  }
  digitalWrite(RUNNING_LED_PIN, HIGH);
}

static void stopPulses() {
  ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
    TCCR1B = 0;  // no more compare matches
    TIMSK1 = 0;
    forceLineLow();  // a pulse cut short is still counted: its rising edge went out
    TCCR1A = 0;      // the pin goes back to PORTB, which holds it low
    TIFR1 = _BV(OCF1A);
    lineHigh = false;
  }
  digitalWrite(RUNNING_LED_PIN, LOW);
}

static uint32_t readPulseCount() {
  uint32_t count;
  ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { count = pulseCount; }
  return count;
}

// --- commands -----------------------------------------------------------------------------

// "200", "200.5", "333.000333": up to 9 integer and 6 fractional digits, nothing else.
static bool parseRateUhz(const char *text, uint64_t *rateUhz) {
  uint64_t whole = 0;
  uint8_t wholeDigits = 0;
  while (*text >= '0' && *text <= '9') {
    if (++wholeDigits > 9) return false;
    whole = whole * 10 + (uint8_t)(*text++ - '0');
  }
  if (wholeDigits == 0) return false;
  uint32_t fraction = 0;
  uint8_t fractionDigits = 0;
  if (*text == '.') {
    text++;
    while (*text >= '0' && *text <= '9') {
      if (++fractionDigits > 6) return false;
      fraction = fraction * 10 + (uint8_t)(*text++ - '0');
    }
    if (fractionDigits == 0) return false;
  }
  if (*text != '\0') return false;
  for (; fractionDigits < 6; fractionDigits++) fraction *= 10;
  *rateUhz = whole * MICROHERTZ_PER_HZ + fraction;
  return true;
}

static void handleLine(char *line) {
  // A keyword, optionally one space and one argument (the rate of RATE).
  char *argument = strchr(line, ' ');
  if (argument != NULL) {
    *argument++ = '\0';
  }
  if (strcmp(line, "RATE") == 0) {
    uint64_t rateUhz;
    if (argument == NULL || !parseRateUhz(argument, &rateUhz)) {
      replyError(F("RATE"), F("SYNTAX"), F("bad argument"));
    } else if (state == RUNNING) {
      replyError(F("RATE"), F("STATE"), F("not while running"));
    } else if (!computeTimer(rateUhz)) {
      replyError(F("RATE"), F("RANGE"), F("rate out of range 0.12 to 10000 Hz"));
    } else {
      rateSet = true;
      Serial.print(F("OK RATE "));
      printRateUhz(achievedRateUhz);
      Serial.write('\n');
    }
    return;
  }
  // Every other command takes no argument.
  bool hasArgument = argument != NULL;
  if (strcmp(line, "VERSION") == 0) {
    if (hasArgument) {
      replyError(F("VERSION"), F("SYNTAX"), F("bad argument"));
      return;
    }
    Serial.print(F("OK VERSION "));
    Serial.print(FIRMWARE_VERSION);
    Serial.write('\n');
  } else if (strcmp(line, "STATE") == 0) {
    if (hasArgument) {
      replyError(F("STATE"), F("SYNTAX"), F("bad argument"));
    } else if (state == IDLE) {
      replyOk(F("STATE IDLE"));
    } else if (state == ARMED) {
      replyOk(F("STATE ARMED"));
    } else {
      replyOk(F("STATE RUNNING"));
    }
  } else if (strcmp(line, "COUNT") == 0) {
    if (hasArgument) {
      replyError(F("COUNT"), F("SYNTAX"), F("bad argument"));
    } else {
      replyOkValue(F("COUNT"), readPulseCount());
    }
  } else if (strcmp(line, "ARM") == 0) {
    if (hasArgument) {
      replyError(F("ARM"), F("SYNTAX"), F("bad argument"));
    } else if (state == RUNNING) {
      replyError(F("ARM"), F("STATE"), F("not while running"));
    } else if (!rateSet) {
      replyError(F("ARM"), F("STATE"), F("no rate set"));
    } else {
      ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { pulseCount = 0; }
      state = ARMED;
      replyOk(F("ARM"));
    }
  } else if (strcmp(line, "START") == 0) {
    if (hasArgument) {
      replyError(F("START"), F("SYNTAX"), F("bad argument"));
    } else if (state != ARMED) {
      replyError(F("START"), F("STATE"), F("not armed"));
    } else {
      startPulses();
      state = RUNNING;
      replyOk(F("START"));
    }
  } else if (strcmp(line, "STOP") == 0) {
    if (hasArgument) {
      replyError(F("STOP"), F("SYNTAX"), F("bad argument"));
    } else {
      // Valid in every state: in IDLE it repeats the last run's count.
      if (state == RUNNING) {
        stopPulses();
      }
      state = IDLE;
      replyOkValue(F("STOP"), readPulseCount());
    }
  } else {
    replyError(F("?"), F("UNKNOWN"), F("unknown command"));
  }
}

// --- main loop ----------------------------------------------------------------------------

void setup() {
  // The Arduino core sets Timer1 up for analogWrite; take it back before using it.
  TCCR1A = 0;
  TCCR1B = 0;
  TIMSK1 = 0;
  digitalWrite(TRIGGER_PIN, LOW);
  pinMode(TRIGGER_PIN, OUTPUT);
  pinMode(RUNNING_LED_PIN, OUTPUT);
  digitalWrite(RUNNING_LED_PIN, LOW);
  Serial.begin(BAUDRATE);
  Serial.print(F("READY jumprig-triggerbox "));
  Serial.print(FIRMWARE_VERSION);
  Serial.write('\n');
}

void loop() {
  while (Serial.available() > 0) {
    uint8_t received = (uint8_t)Serial.read();
    if (received == '\r') {
      continue;  // terminals send CRLF
    }
    if (received == '\n') {
      if (lineOverflowed) {
        replyError(F("?"), F("OVERFLOW"), F("line too long"));
      } else if (lineHasBadByte) {
        replyError(F("?"), F("UNKNOWN"), F("unknown command"));
      } else if (lineLength > 0) {
        lineBuffer[lineLength] = '\0';
        handleLine(lineBuffer);
      }  // an empty line is ignored: the host sends one to end any half line first
      lineLength = 0;
      lineOverflowed = false;
      lineHasBadByte = false;
    } else if (lineOverflowed) {
      // Drop the rest of an over-long line, up to its newline.
    } else if (lineLength >= MAX_REQUEST_BYTES) {
      lineOverflowed = true;
    } else {
      // Only printable ASCII makes a command; a NUL would also cut the C string short.
      if (received < 0x20 || received > 0x7E) {
        lineHasBadByte = true;
      }
      lineBuffer[lineLength++] = (char)received;
    }
  }
}
