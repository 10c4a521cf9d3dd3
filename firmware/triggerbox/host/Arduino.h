// A stand-in for the Arduino core, just enough to build triggerbox.ino on a desktop compiler.
// The AVR registers are plain variables and Serial reads from and writes to memory, so
// host_harness.cpp can drive the firmware's parser and state machine and compare its replies with
// the Python emulator's (tests/acquisition/triggerbox/test_triggerbox_firmware_parity.py).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

class __FlashStringHelper;
#define F(text) (reinterpret_cast<const __FlashStringHelper *>(text))

#define HIGH 1
#define LOW 0
#define OUTPUT 1
#define _BV(bit) (1 << (bit))

// Timer1 register bits of the ATmega328P.
#define COM1A1 7
#define COM1A0 6
#define FOC1A 7
#define WGM12 3
#define OCIE1A 1
#define OCF1A 1

extern uint8_t TCCR1A, TCCR1B, TCCR1C, TIMSK1, TIFR1;
extern uint16_t TCNT1, OCR1A;

#define ISR(vector) extern "C" void vector(void)

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t level);

class HostSerial {
 public:
  void begin(uint32_t baudrate);
  int available();
  int read();
  size_t write(uint8_t value);
  void print(const __FlashStringHelper *text);
  void print(const char *text);
  void print(uint32_t value);
};

extern HostSerial Serial;
